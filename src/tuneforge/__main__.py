"""`python -m tuneforge` runs the command line, like the `tuneforge` script."""

from tuneforge.cli import main

main()
