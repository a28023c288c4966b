"""`python -m pathway.demo` (what scripts/demo runs): see pathway.demo.run."""

import sys

from pathway.demo.run import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
