/*
 * Test-only stand-in for bcryptprimitives.dll, for running tsforge.exe under Wine.
 *
 * Rust's standard library on Windows gets random bytes (HashMap seeds) from ProcessPrng in
 * bcryptprimitives.dll, which Windows 10+ has but Wine 8 (Debian 12) lacks altogether, so the
 * loader refuses to start the program ("Library bcryptprimitives.dll ... not found", exit 53). tests/wine.rs builds this file with
 *   x86_64-w64-mingw32-gcc -shared -O2 -s -o bcryptprimitives.dll processprng.c processprng.def -ladvapi32
 * into a temporary folder and puts the DLL beside tsforge.exe (an application-folder DLL is
 * loaded before the system one). It is never shipped: real Windows and Windows PE have the
 * real DLL.
 *
 * ProcessPrng fills the buffer from RtlGenRandom (advapi32's SystemFunction036), which Wine
 * implements, in chunks because RtlGenRandom takes a ULONG length. Like the real function it
 * always returns TRUE for valid input.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom */

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
