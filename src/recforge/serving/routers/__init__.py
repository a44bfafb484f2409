"""One router per resource: users, items, events, model, health, metrics."""
