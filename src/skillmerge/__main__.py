"""``python -m skillmerge`` (and ``accelerate launch -m skillmerge ...``) runs the CLI."""

from skillmerge.cli import main

main()
