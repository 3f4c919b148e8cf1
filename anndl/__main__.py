import sys

from anndl.env import quiet_environment

quiet_environment()  # TensorFlow's and absl's log levels, before anything imports TensorFlow

from anndl.cli import main  # noqa: E402

sys.exit(main())
