"""``python -m approver.emulator``: the ``emulator`` subcommand on its own."""

import argparse
import sys

from approver.emulator.cli import add_arguments, run

parser = argparse.ArgumentParser(prog="python -m approver.emulator")
add_arguments(parser)
sys.exit(run(parser.parse_args()))
