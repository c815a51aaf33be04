"""Install the system parts the test suite needs that pip cannot (Debian's chromium), when missing."""

from __future__ import annotations

import shutil
import subprocess
import sys


def main() -> int:
    # Browser tests arrive with the console; until then nothing outside pip is needed.
    missing = [tool for tool in () if shutil.which(tool) is None]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
