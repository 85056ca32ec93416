"""A stock nameko gateway, the nameko-examples way: HTTP → RpcProxy → the read.

``nameko run --config bench/stock.yaml bench.stock_gateway``
"""
import json

from nameko.rpc import RpcProxy
from nameko.web.handlers import http
from werkzeug.wrappers import Response


class StockGateway:
    name = "stock_gateway"

    stock_rpc = RpcProxy("stock")

    @http("GET", "/products/<int:product_id>")
    def get_product(self, request, product_id):
        product = self.stock_rpc.get_product(product_id)
        return Response(json.dumps(product), mimetype="application/json")
