import signal
import sys


def _terminated(signum, frame):  # SIGTERM while starting; anndl.cli.main installs its own for the command
    raise KeyboardInterrupt("SIGTERM")


signal.signal(signal.SIGTERM, _terminated)
try:
    from anndl.core.env import quiet_environment
    quiet_environment()  # TensorFlow's and absl's log levels, before anything imports TensorFlow
    from anndl.cli import main
except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM while starting: nothing was done yet
    terminated = str(e) == "SIGTERM"
    print(f"{'terminated (SIGTERM)' if terminated else 'interrupted'} while starting: nothing was done; "
          "run the command again", file=sys.stderr)
    sys.exit(143 if terminated else 130)
sys.exit(main())
