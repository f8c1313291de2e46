"""Zigbee through a TI Z-Stack (ZNP) coordinator stick.

``znp`` (MT frames and commands) and ``zcl`` (clusters, Xiaomi/Aqara) are pure codecs;
``transport``, ``api`` and ``coordinator`` do the I/O. See docs/zigbee.md.
"""
