"""State-change events: EventBridge envelope, outbox, rules and targets."""
