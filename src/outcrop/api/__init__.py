"""HTTP API: the Bedrock control-plane routes, SigV4 authentication, and the wire error mapping."""
