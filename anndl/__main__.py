import sys

try:
    from anndl.core.env import quiet_environment

    quiet_environment()  # TensorFlow's and absl's log levels, before anything imports TensorFlow

    from anndl.cli import main  # noqa: E402
except KeyboardInterrupt:  # Ctrl-C while starting: nothing was done yet
    print("interrupted while starting: nothing was done; run the command again", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
