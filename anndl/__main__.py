import signal
import sys

from anndl.core.env import Terminated, on_signal, quiet_environment

signal.signal(signal.SIGTERM, on_signal)  # while starting; anndl.cli.main installs its handlers for the command
quiet_environment()  # TensorFlow's and absl's log levels, before anything imports TensorFlow
try:
    from anndl.cli import main
except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM while starting: nothing was done yet
    print(f"{'terminated (SIGTERM)' if isinstance(e, Terminated) else 'interrupted'} while starting: nothing was "
          "done; run the command again", file=sys.stderr)
    sys.exit(143 if isinstance(e, Terminated) else 130)
sys.exit(main())
