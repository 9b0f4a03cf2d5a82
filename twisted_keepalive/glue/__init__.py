"""
What both adapters share on Twisted, with no framing library in it: the
connection's link between the core and the reactor
(:mod:`twisted_keepalive.glue.link`), what a factory's connections share
(:mod:`twisted_keepalive.glue.record`), the timeout's warning and abort
(:mod:`twisted_keepalive.glue.closing`), application Pings
(:mod:`twisted_keepalive.glue.pings`) and the probes of Twisted's TCP
transport (:mod:`twisted_keepalive.glue.transport`).
"""
