@echo off
rem Pre-execution hook: choose the task sequence to run and set TSForgeSequence.
rem Lists _TSForgeSequences (comma-separated) numbered 1..n and asks for a number (5 tries).
rem One sequence: chosen without asking. TSForgeSequence already set: kept.
rem Written without ( ) blocks and !var:~n! so that it also runs under Wine's cmd.
setlocal EnableDelayedExpansion
if not defined TSForgeSequence goto list
echo TSForgeSequence is already set: keeping "!TSForgeSequence!"
exit /b 0
:list
set n=0
set "rest=%_TSForgeSequences%"
:split
if not defined rest goto listed
set "item="
for /f "tokens=1* delims=," %%a in ("%rest%") do call :take "%%a" "%%b"
if not defined item goto listed
:trim
if not defined item goto split
if not "%item:~0,1%"==" " goto trim_end
set "item=%item:~1%"
goto trim
:trim_end
if not "%item:~-1%"==" " goto trimmed
set "item=%item:~0,-1%"
goto trim
:trimmed
set /a n+=1
set "seq%n%=!item!"
goto split
:listed
if not %n%==0 goto found
echo error: no task sequences: _TSForgeSequences is empty (run this hook from tsforge boot)
exit /b 1
:found
if not %n%==1 goto menu
set "chosen=!seq1!"
echo Task sequence: !chosen! (the only one on this medium)
call :setvar TSForgeSequence chosen
exit /b %ERRORLEVEL%
:menu
echo Task sequences on this medium:
for /l %%i in (1,1,%n%) do call :show %%i
set tries=0
:ask
set "answer="
set /p "answer=Sequence number: "
set "t=!answer!"
:zeros
if not defined t goto pick
if not "%t:~0,1%"=="0" goto pick
if "%t%"=="0" goto pick
set "t=%t:~1%"
goto zeros
:pick
set "chosen="
if defined t for /l %%i in (1,1,%n%) do if "!t!"=="%%i" call :choose %%i
if not defined chosen goto bad
echo Task sequence: !chosen!
call :setvar TSForgeSequence chosen
exit /b %ERRORLEVEL%
:bad
echo "!answer!" is not a number from 1 to %n%
set /a tries+=1
if %tries% lss 5 goto ask
echo no task sequence chosen after 5 tries
exit /b 1

:take
set "item=%~1"
set "rest=%~2"
exit /b 0
:show
echo   %1. !seq%1!
exit /b 0
:choose
set "chosen=!seq%1!"
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
