#!/usr/bin/env python
"""ramac's command line in a checkout (installed, it is the `ramac` command): pipeline/cli.py.

python reproduce.py --help
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
