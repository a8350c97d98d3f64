"""`python -m gclf.runtime.cli`: gclf-infer, for a machine where the venv's scripts are not on the PATH."""

from gclf.runtime.cli.infer import main

main()
