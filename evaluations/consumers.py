from channels.generic.websocket import WebsocketConsumer


class RejectConsumer(WebsocketConsumer):
    """Catch-all: closes unknown websocket paths with 4404 instead of a daphne 500."""

    def connect(self) -> None:
        self.close(code=4404)
