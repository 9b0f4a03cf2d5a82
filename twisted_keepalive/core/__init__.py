"""
The keepalive core: no reactor, no framing library, only plain values.

- :mod:`config` -- the settings, validated once into a frozen value;
- :mod:`heartbeat` -- one connection's state: phase, ledger of Pings, latency;
- :mod:`verdict` -- the rules that turn a passed deadline into a verdict;
- :mod:`wheel` -- one timer for many connections' deadlines;
- :mod:`stats` -- counters for metrics; :mod:`browser` -- the browser
  heartbeat's wire format; :mod:`errors` -- the exceptions.
"""
