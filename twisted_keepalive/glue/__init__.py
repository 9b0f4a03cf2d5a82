"""
What both adapters share on Twisted, with no framing library in it: the
connection's link between the core and the reactor (:mod:`.link`), what a
factory's connections share (:mod:`.record`), the timeout's warning and
abort (:mod:`.closing`), application Pings (:mod:`.pings`) and the probes of
Twisted's TCP transport (:mod:`.transport`).
"""
