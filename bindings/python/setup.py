"""Build step of the kestrel package: records where libkestrel.so is (see README.md).

At `pip install` time the folder comes from KESTREL_LIB_DIR (absolute) or from
`pkg-config --variable=libdir kestrel`; it is written into kestrel/_build_config.py so that the
installed package finds the library without any variable. Neither: the package falls back to the
dynamic loader's path at import. Nothing is compiled.
"""
import os
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py


def find_libdir():
    d = os.environ.get("KESTREL_LIB_DIR")
    if d:
        if not os.path.isabs(d):
            raise SystemExit(f"kestrel: KESTREL_LIB_DIR={d} is relative; pip builds in another "
                             f"folder, so give an absolute path (e.g. \"$PWD/{d}\")")
        if not os.path.exists(os.path.join(d, "libkestrel.so")):
            raise SystemExit(f"kestrel: KESTREL_LIB_DIR={d} holds no libkestrel.so")
        return d
    try:
        out = subprocess.run(["pkg-config", "--variable=libdir", "kestrel"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return None


class BuildPy(build_py):
    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "kestrel", "_build_config.py")
        with open(target, "w") as f:
            f.write('"""Written by setup.py at install time: where libkestrel.so was found."""\n')
            f.write(f"LIB_DIR = {find_libdir()!r}\n")


setup(cmdclass={"build_py": BuildPy})
