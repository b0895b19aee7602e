@echo off
rem Pre-execution hook: before a sequence that erases disks, make the operator type WIPE.
rem Anything else (or no input) stops the boot; on WIPE it sets TSForgeWipeConfirmed=true.
rem TSForgeConfirmWipe=false skips the question (unattended labs).
setlocal EnableDelayedExpansion
if /i not "%TSForgeConfirmWipe%"=="false" goto ask
echo TSForgeConfirmWipe=false: not asking before the disks are erased
exit /b 0
:ask
set "disks=%_TSForgeDiskCount%"
if not defined disks set "disks=unknown"
echo WARNING: this task sequence erases disk(s) on this computer; everything on them is lost.
echo   disks found: !disks!
if defined TSForgeWipeDisk echo   target disk: TSForgeWipeDisk = !TSForgeWipeDisk!
if not defined TSForgeWipeDisk if defined OSDisk echo   target disk: OSDisk = !OSDisk!
set "answer="
set /p "answer=Type WIPE to continue: "
if "!answer!"=="WIPE" goto confirmed
echo not confirmed: nothing was changed
exit /b 1
:confirmed
echo Confirmed: the task sequence may erase the disk(s).
set "confirmed=true"
call :setvar TSForgeWipeConfirmed confirmed
exit /b %ERRORLEVEL%

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
