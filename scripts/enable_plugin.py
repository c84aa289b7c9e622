"""Enable the SlideWatch plugin in a QGIS profile (idempotent).

Usage: python enable_plugin.py <profile folder>
Edits <profile>/QGIS/QGIS3.ini, section [PythonPlugins], key slidewatch=true.
"""
import os
import sys


def enable(profile):
    ini = os.path.join(profile, "QGIS", "QGIS3.ini")
    os.makedirs(os.path.dirname(ini), exist_ok=True)
    lines = open(ini, encoding="utf-8").read().splitlines() if os.path.exists(ini) else []
    out, in_section, done = [], False, False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            if in_section and not done:
                out.append("slidewatch=true")
                done = True
            in_section = stripped == "[PythonPlugins]"
        elif in_section and stripped.split("=", 1)[0] == "slidewatch":
            line, done = "slidewatch=true", True
        out.append(line)
    if in_section and not done:
        out.append("slidewatch=true")
        done = True
    if not done:
        out += ["", "[PythonPlugins]", "slidewatch=true"]
    tmp = ini + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\n".join(out) + "\n")
    os.replace(tmp, ini)


if __name__ == "__main__":
    enable(sys.argv[1])
