"""Network edges: TCP/MQTT/HTTP listeners, batching, ack after commit."""
