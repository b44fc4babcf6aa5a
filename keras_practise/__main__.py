"""`python -m keras_practise ...`: the `keras-practise` command."""
from keras_practise.cli import main

raise SystemExit(main())
