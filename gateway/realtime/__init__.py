"""The upstream side: the Realtime WebSocket and the link that keeps it open."""
