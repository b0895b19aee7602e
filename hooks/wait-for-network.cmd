@echo off
rem Pre-execution hook: wait until the computer has an IPv4 address (not loopback 127.x, not
rem link-local 169.254.x), checking about once a second, and set TSForgeIPAddress to it.
rem   TSForgeNetworkTimeout  seconds to wait (default 60); on timeout the hook fails (exit 1)
rem   TSForgeNetworkHost     optional: also wait until `ping -n 1 HOST` gets a reply
rem For tests: TSFORGE_IP_COMMAND, when set, is run instead of ipconfig (same output format).
rem Windows PE has no timeout.exe: `ping -n 2 127.0.0.1` waits the second.
setlocal EnableDelayedExpansion
set "timeout=%TSForgeNetworkTimeout%"
if not defined timeout set timeout=60
set "bad="
for /f "delims=0123456789" %%x in ("%timeout%") do set "bad=%%x"
if not defined bad goto zeros
echo error: TSForgeNetworkTimeout="!timeout!" is not a number of seconds
exit /b 1
:zeros
if not "%timeout:~0,1%"=="0" goto parsed
if "%timeout%"=="0" goto parsed
set "timeout=%timeout:~1%"
goto zeros
:parsed
set "ipcmd=%TSFORGE_IP_COMMAND%"
if not defined ipcmd set "ipcmd=ipconfig"
set "host=%TSForgeNetworkHost%"
if defined host echo Waiting up to %timeout% s for an IPv4 address and for !host! to answer ping...
if not defined host echo Waiting up to %timeout% s for an IPv4 address...
set elapsed=0
:check
set "addr="
for /f "tokens=1* delims=:" %%a in ('%ipcmd% 2^>nul ^| find "IPv4"') do if not defined addr call :candidate "%%b"
if not defined addr goto wait
if not defined host goto up
rem ping exits 0 for "destination unreachable" replies too: look for TTL= in the reply.
ping -n 1 -w 1000 %host% 2>nul | find "TTL=" >nul
if not errorlevel 1 goto up
set /a elapsed+=1
:wait
if %elapsed% geq %timeout% goto timedout
set /a r=elapsed %% 10
if %elapsed% gtr 0 if %r%==0 echo   still waiting: %elapsed% s
ping -n 2 127.0.0.1 >nul 2>nul
set /a elapsed+=1
goto check
:timedout
if defined addr goto no_reply
echo error: no IPv4 address after %timeout% s (TSForgeNetworkTimeout): check the cable, the network driver and DHCP
exit /b 1
:no_reply
echo error: !host! did not answer ping within %timeout% s (TSForgeNetworkTimeout); this computer has !addr!
exit /b 1
:up
if defined host echo Network is up: IPv4 address !addr!; !host! answers ping
if not defined host echo Network is up: IPv4 address !addr!
call :setvar TSForgeIPAddress addr
exit /b %ERRORLEVEL%

rem call :candidate " ADDRESS": the address unless it is loopback or link-local.
:candidate
set "cand="
for /f "tokens=1 delims=( " %%c in ("%~1") do set "cand=%%c"
if not defined cand exit /b 0
if "%cand:~0,4%"=="127." exit /b 0
if "%cand:~0,8%"=="169.254." exit /b 0
set "addr=%cand%"
exit /b 0

rem call :setvar NAME VARIABLE: sets task sequence variable NAME to the value of VARIABLE,
rem with tsforge env set, else by appending NAME=VALUE to %TSFORGE_ENV_FILE%.
:setvar
set "tsforge="
for %%t in (tsforge.exe) do set "tsforge=%%~$PATH:t"
if not defined tsforge goto setvar_file
"%tsforge%" env set %1 "!%2!"
if errorlevel 1 exit /b 1
exit /b 0
:setvar_file
if defined TSFORGE_ENV_FILE goto setvar_append
echo TSFORGE_ENV_FILE is not set: run this hook from tsforge
exit /b 1
:setvar_append
>>"%TSFORGE_ENV_FILE%" echo %1=!%2!
exit /b 0
