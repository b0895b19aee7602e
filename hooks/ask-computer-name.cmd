@echo off
rem Pre-execution hook: ask for the computer name and set OSDComputerName.
setlocal EnableDelayedExpansion
set tries=0
:ask
set "name="
set /p "name=Computer name: "
if not defined name goto bad
echo(!name!| findstr /r /x "[A-Za-z0-9-][A-Za-z0-9-]*" >nul || goto bad
echo(!name!| findstr /r /x "[0-9][0-9]*" >nul && goto bad
if not "!name:~15!"=="" goto bad
tsforge env set OSDComputerName "!name!"
exit /b %ERRORLEVEL%
:bad
echo "!name!" is not a valid computer name (1-15 letters, digits or -, not only digits)
set /a tries+=1
if !tries! lss 5 goto ask
exit /b 1
