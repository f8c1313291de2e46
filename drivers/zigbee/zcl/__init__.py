"""Zigbee Cluster Library: frames, data types, clusters and the Xiaomi/Aqara extensions.

Pure and radio independent: Z-Stack (``drivers.zigbee.znp``) hands it the APS payload, a
second radio family (EZSP) could do the same.
"""
