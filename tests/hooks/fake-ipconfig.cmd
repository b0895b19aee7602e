@echo off
rem Stand-in for ipconfig (TSFORGE_IP_COMMAND): `fake-ipconfig.cmd COUNTER N` shows only
rem loopback and a link-local address for the first N calls (counted in the file COUNTER),
rem then 10.0.2.15 as well.
set calls=0
if exist "%~1" for /f "usebackq" %%n in ("%~1") do set calls=%%n
set /a calls+=1
>"%~1" echo %calls%
echo Ethernet adapter Loopback:
echo    IPv4 Address. . . . . . . . . . . : 127.0.0.1
echo Ethernet adapter Ethernet 2:
echo    Autoconfiguration IPv4 Address. . : 169.254.7.7(Preferred)
if %calls% leq %2 exit /b 0
echo Ethernet adapter Ethernet:
echo    IPv6 Address. . . . . . . . . . . : fe80::1
echo    IPv4 Address. . . . . . . . . . . : 10.0.2.15
echo    Subnet Mask . . . . . . . . . . . : 255.255.255.0
