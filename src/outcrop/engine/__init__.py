"""The job engine: validate -> schedule -> run shards -> finalise. Never imports the web stack."""
