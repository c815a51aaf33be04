"""Outcrop: self-hosted batch inference speaking the Bedrock model invocation job API."""
