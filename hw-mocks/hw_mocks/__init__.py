"""Simulated hardware for migw: the demo, the tests and field self-tests run on it.

- ``hw_mocks.gpio``: gpiozero's MockFactory with scripted button presses, door and PIR.
- ``hw_mocks.ble``: a replay scanner and a synthetic fleet of Xiaomi/BTHome sensors.
- ``hw_mocks.znp``: a Z-Stack coordinator simulator on a real pty with Aqara devices.
"""
