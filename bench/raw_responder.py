"""The limit of this stack: a py-amqp responder that answers nameko-style RPC requests
with their own keyword arguments, with no framework, no database and no confirms.

``python -m bench.raw_responder URI`` serves `raw.echo` until killed.
"""
import json
import sys

import amqp

from bench.load import RPC_EXCHANGE, connect

QUEUE, ROUTING_KEY = "rpc-raw", "raw.*"


def main(uri):
    connection = connect(uri)
    channel = connection.channel()
    channel.exchange_declare(RPC_EXCHANGE, "topic", durable=True, auto_delete=False)
    channel.queue_declare(QUEUE, durable=True, auto_delete=False)
    channel.queue_bind(QUEUE, RPC_EXCHANGE, ROUTING_KEY)
    channel.basic_qos(0, 100, False)

    def answer(message):
        kwargs = json.loads(message.body)["kwargs"]
        channel.basic_publish(
            amqp.Message(json.dumps({"result": kwargs, "error": None}),
                         content_type="application/json", content_encoding="utf-8",
                         correlation_id=message.properties.get("correlation_id"),
                         delivery_mode=2),
            exchange=RPC_EXCHANGE, routing_key=message.properties["reply_to"])
        channel.basic_ack(message.delivery_tag)

    channel.basic_consume(QUEUE, callback=answer)
    print("ready", flush=True)
    while True:
        connection.drain_events()


if __name__ == "__main__":
    main(sys.argv[1])
