"""The gRPC edge: VoiceAgentService (Converse, Transcribe, Synthesize) and SessionService.

requests.py decodes protos into the core's SessionRequest; status.py maps the core's error
Kinds to status codes; the services only translate between the wire and the core.
"""
