#!/usr/bin/env python3
"""README.md tells the truth about the CLI and the tree (ctest readme_test, label `docs`).

    readme_test.py KESTREL REPO_ROOT

1. Every command `kestrel help` lists has a line in the README's CLI synopsis (the first ```
   block under "## The CLI") and the other way round.
2. Per command, the flags the synopsis shows are exactly the flags `kestrel help COMMAND` shows
   (a short and a long spelling of one flag, "-m, --model", count as the same; -h/--help is
   left out).
3. The "## Layout" table names every top-level folder of the repository and every sample,
   binding and tool folder.
4. The device table names every plugin folder.
Exit 0 pass, 1 fail (each difference is printed).
"""
import os
import re
import subprocess
import sys

FLAG = re.compile(r"(?<![\w-])(--?[a-zA-Z][a-zA-Z0-9-]*)")
ALIAS = re.compile(r"^\s+(-[a-zA-Z]), (--[a-z][a-z0-9-]*)", re.M)


def help_text(kestrel, *topic):
    return subprocess.run([kestrel, "help", *topic], check=True, stdout=subprocess.PIPE, text=True).stdout


def section(readme, title):
    start = readme.index(title)
    end = readme.find("\n## ", start + len(title))
    return readme[start:end if end >= 0 else None]


def canonical(flags, aliases):
    flags = {"-v" if re.fullmatch(r"-v+", f) else f for f in flags}  # -vv: more of -v
    return {aliases.get(f, f) for f in flags} - {"--help"}


def main():
    kestrel, root = sys.argv[1], sys.argv[2]
    readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
    errors = []

    overview = help_text(kestrel)
    commands = re.findall(r"^  ([a-z]+)\s{2,}", overview.split("commands:")[1], re.M)
    commands = [c for c in commands if c != "help"]
    cli = section(readme, "## The CLI")
    block = cli.split("```")[1]
    synopsis = {}
    current = None
    for line in block.splitlines():
        m = re.match(r"^kestrel ([a-z]+)\b", line)
        if m:
            current = m.group(1)
        elif line and not line.startswith(" "):
            current = None  # another tool (kestrel-synth)
        if current and current != "help":
            synopsis.setdefault(current, []).append(line)
    for c in commands:
        if c not in synopsis:
            errors.append(f"README synopsis has no line for `kestrel {c}` (kestrel help lists it)")
    for c in synopsis:
        if c not in commands:
            errors.append(f"README synopsis shows `kestrel {c}`, which `kestrel help` does not list")

    for c in commands:
        if c not in synopsis:
            continue
        text = help_text(kestrel, c)
        aliases = {short: long for short, long in ALIAS.findall(text)}
        in_help = canonical(FLAG.findall(text), aliases)
        in_readme = canonical(FLAG.findall("\n".join(synopsis[c])), aliases)
        for f in sorted(in_help - in_readme):
            errors.append(f"`kestrel {c}`: {f} is in `kestrel help {c}` but not in the README synopsis")
        for f in sorted(in_readme - in_help):
            errors.append(f"`kestrel {c}`: {f} is in the README synopsis but not in `kestrel help {c}`")

    layout = section(readme, "## Layout")
    tracked = subprocess.run(["git", "-C", root, "ls-files"], stdout=subprocess.PIPE, text=True).stdout
    top = sorted({p.split("/")[0] for p in tracked.splitlines() if "/" in p and not p.startswith(".")})
    if not top:  # not a git checkout: the folders on disk
        top = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))
                     and not d.startswith((".", "build")))
    nested = []
    for parent in ("samples", "bindings", "tools", "plugins"):
        d = os.path.join(root, parent)
        nested += [f"{parent}/{n}" for n in sorted(os.listdir(d)) if os.path.isdir(os.path.join(d, n))]
    for folder in top + nested:
        if f"`{folder}/`" not in layout:
            errors.append(f"the README layout table does not name `{folder}/`")

    devices = section(readme, "| device | plugin | what |")
    for folder in nested:
        if folder.startswith("plugins/") and folder != "plugins/common" and f"`{folder}`" not in devices:
            errors.append(f"the README device table does not name `{folder}`")

    for e in errors:
        print("FAIL:", e)
    print("readme_test:", "ok" if not errors else f"{len(errors)} difference(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
