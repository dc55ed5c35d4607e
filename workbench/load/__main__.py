"""`python -m workbench.load URL ...`: the load command on its own, for testing."""

import argparse
import sys

from workbench.load._cli import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="workbench load", description="Load an HTTP service.")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
