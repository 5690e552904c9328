"""The local API server: speaks PICPIK's API (signatures, RetCodes, rate limits, async tasks,
expiring results, fault injection) for the demo, the tests and the benchmarks.

Start it with `python -m emulator`; build the ASGI app with `emulator.app.create_app`.
"""

from emulator.retcodes import RetCode
from emulator.settings import EmulatorSettings

__all__ = ["EmulatorSettings", "RetCode"]
