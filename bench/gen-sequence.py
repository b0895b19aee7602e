#!/usr/bin/env python3
"""Generate benchmark task sequences.

  gen-sequence.py big [--steps N] > big.xml
      A ConfigMgr-style <sequence> of N steps (default 10,000): groups nested 4 levels deep,
      steps of several types with their properties, and conditions of every expression type
      (variable, file, folder, registry, WMI, software, OS) under and/or/not operators.
      Deterministic (fixed seed), so every run measures the same file.

  gen-sequence.py setvar [--steps N] > big-setvar.yaml
      N Set Task Sequence Variable steps (default 1,000) in YAML, for the engine's per-step cost.
"""
import argparse
import random
import sys
from xml.sax.saxutils import escape, quoteattr

STEP_ATTRS = 'description="" runIn="WinPEandFullOS" successCodeList="0 3010" retryCount="0" runFromNet="false"'


def var(name, value, prop=None):
    p = f' property={quoteattr(prop)}' if prop else ""
    return f'<variable name={quoteattr(name)}{p}>{escape(value)}</variable>'


def expression(rng, i):
    kind = rng.choice(["var", "var", "var", "file", "folder", "reg", "wmi", "sw", "os"])
    if kind == "var":
        op = rng.choice(["equals", "notEquals", "greater", "lessEqual", "like", "exists"])
        vs = [var("Operator", op), var("Value", f"Value{i % 97}*" if op == "like" else str(i % 97)),
              var("Variable", f"BenchVar{i % 50}")]
        t = "SMS_TaskSequence_VariableConditionExpression"
    elif kind == "file":
        vs = [var("DateTime", "20190101000000.000000+000"), var("DateTimeOperator", "greater"),
              var("Path", f"%SystemDrive%\\Bench\\flag{i}.txt")]
        t = "SMS_TaskSequence_FileConditionExpression"
    elif kind == "folder":
        vs = [var("Path", f"%SystemDrive%\\Bench\\dir{i % 13}")]
        t = "SMS_TaskSequence_FolderConditionExpression"
    elif kind == "reg":
        vs = [var("KeyPath", "HKEY_LOCAL_MACHINE\\SOFTWARE\\Bench"), var("Operator", "exists"),
              var("Value", ""), var("Data", ""), var("Type", "REG_SZ")]
        t = "SMS_TaskSequence_RegistryConditionExpression"
    elif kind == "wmi":
        vs = [var("Namespace", "root\\cimv2"),
              var("Query", f"SELECT * FROM Win32_ComputerSystem WHERE Model LIKE '%Model{i % 7}%'")]
        t = "SMS_TaskSequence_WMIConditionExpression"
    elif kind == "sw":
        vs = [var("Operator", "AnyVersion"), var("ProductCode", "{90160000-008C-0000-0000-0000000FF1CE}"),
              var("ProductName", "Office"), var("UpgradeCode", ""), var("Version", "16.0")]
        t = "SMS_TaskSequence_SoftwareConditionExpression"
    else:
        vs = [var("OperatingSystem", "Windows 10 (64-bit)"), var("Operator", "equals")]
        t = "SMS_TaskSequence_OSConditionExpression"
    return f'<expression type="{t}">' + "".join(vs) + "</expression>"


def condition(rng, i):
    r = rng.random()
    if r < 0.45:
        return ""
    if r < 0.75:
        inner = expression(rng, i)
    else:
        op = rng.choice(["and", "or"])
        kids = [expression(rng, i + k) for k in range(rng.randint(2, 3))]
        if rng.random() < 0.5:
            kids.append(f'<operator type="not">{expression(rng, i + 9)}</operator>')
        inner = f'<operator type="{op}">' + "".join(kids) + "</operator>"
    return f"<condition>{inner}</condition>"


def step(rng, i):
    cond = condition(rng, i)
    kind = i % 6
    name = f"Step {i:05d}"
    if kind in (0, 1):
        cmd = f'cmd.exe /c echo step {i} &gt;&gt; %_SMSTSLogPath%\\bench.log'
        body = (f"<action>{cmd}</action><defaultVarList>"
                + f'<variable name="CommandLine" property="CommandLine">{cmd}</variable>'
                + var("SMSTSDisableWow64Redirection", "false", "DisableWow64Redirection")
                + "</defaultVarList>")
        t = "SMS_TaskSequence_RunCommandLineAction"
    elif kind == 2:
        body = (f'<action>tsenv.exe "BenchVar{i % 50}={i}"</action><defaultVarList>'
                + var("VariableName", f"BenchVar{i % 50}", "VariableName")
                + var("VariableValue", f"value-{i}-%OSDComputerName%", "VariableValue")
                + "</defaultVarList>")
        t = "SMS_TaskSequence_SetVariableAction"
    elif kind == 3:
        body = ("<action>osdrunpowershellscript.exe</action><defaultVarList>"
                + var("OSDRunPowerShellScriptSourceScript", f"Write-Output 'step {i}'", "SourceScript")
                + var("OSDRunPowerShellScriptExecutionPolicy", "Bypass", "ExecutionPolicy")
                + "</defaultVarList>")
        t = "SMS_TaskSequence_RunPowerShellScriptAction"
    elif kind == 4:
        body = ("<action>osdcapturestate.exe</action><defaultVarList>"
                + var("OSDMigrateMode", "Simple", "MigrateMode")
                + var("OSDMigrateAdditionalCaptureOptions", "/uel:90 /ue:*\\*", "AdditionalCaptureOptions")
                + var("_OSDMigrateUsmtPackageID", "LAB00004", "UsmtPackageID")
                + "</defaultVarList>")
        t = "SMS_TaskSequence_CaptureUserStateAction"
    else:
        body = ("<action>osddownloadcontent.exe</action><defaultVarList>"
                + var("OSDDownloadDownloadPackages", f"LAB{i % 100:05d}", "DownloadPackages")
                + var("OSDDownloadDestinationLocationType", "TSCache", "DestinationLocationType")
                + "</defaultVarList>")
        t = "SMS_TaskSequence_DownloadPackageContentAction"
    return (f'<step type="{t}" name="{name}" {STEP_ATTRS} timeout="{60 * (1 + i % 30)}">'
            + cond + body + "</step>")


def big(n, out):
    rng = random.Random(20261125)
    # 4 levels of groups: 10 x 5 x 5 x 4 = 1,000 innermost groups of n/1000 steps each.
    shape = [10, 5, 5, 4]
    leaves = 1
    for s in shape:
        leaves *= s
    per_leaf, extra = divmod(n, leaves)
    counter = [0, 0]  # steps, leaves

    w = out.write
    w('<?xml version="1.0" encoding="utf-8"?>\n<sequence version="3.00" name="Benchmark">\n')
    w("<globalVarList>")
    for k in range(50):
        w(var(f"BenchVar{k}", str(k), f"BenchVar{k}"))
    w("</globalVarList>\n")

    def group(level, path):
        attrs = f'name="Group {path}" description="level {level}" expand="true"'
        if rng.random() < 0.2:
            attrs += ' continueOnError="true"'
        w(f"<group {attrs}>{condition(rng, len(path) * 31 + level)}\n")
        if level == len(shape) - 1:
            count = per_leaf + (1 if counter[1] < extra else 0)
            counter[1] += 1
            for _ in range(count):
                w(step(rng, counter[0]) + "\n")
                counter[0] += 1
        else:
            for k in range(shape[level + 1]):
                group(level + 1, f"{path}.{k + 1}")
        w("</group>\n")

    for k in range(shape[0]):
        group(0, str(k + 1))
    w('<referenceList><reference package="LAB00004"/><reference package="LAB00031"/></referenceList>\n')
    w("</sequence>\n")
    assert counter[0] == n, counter


def setvar(n, out):
    w = out.write
    w("# Generated by bench/gen-sequence.py setvar: the engine's per-step cost.\n")
    w(f"name: SetVar x{n}\nsteps:\n")
    for i in range(n):
        w(f"  - name: Set {i:05d}\n    type: set-variable\n    properties:\n"
          f"      VariableName: BenchVar{i % 100}\n      VariableValue: value-{i}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["big", "setvar"])
    ap.add_argument("--steps", type=int)
    a = ap.parse_args()
    if a.kind == "big":
        big(a.steps or 10_000, sys.stdout)
    else:
        setvar(a.steps or 1_000, sys.stdout)


if __name__ == "__main__":
    main()
