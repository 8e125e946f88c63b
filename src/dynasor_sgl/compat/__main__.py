"""`python -m dynasor_sgl.compat install`: used by `make setup`."""

import sys

from dynasor_sgl.compat import install_torchvision_shim


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        sys.stderr.write("usage: python -m dynasor_sgl.compat install\n")
        return 2
    installed = install_torchvision_shim()
    sys.stdout.write(
        "torchvision CPU shim installed\n" if installed else "torch is not a CPU build: no shim\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
