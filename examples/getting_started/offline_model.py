"""A scripted stand-in for a model, so the guide runs without an API key.

It takes payment the way a model following the instructions does, one tool call per turn: look the order up,
charge its amount, email the receipt of the charge, then say what it did. (Testing your agents: ``FunctionModel``.)
"""

import re

from perdure.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from perdure.testing import AgentInfo, FunctionModel


def _take_payment(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    prompt = str(messages[0].parts[-1].content)
    order_id = int(re.findall(r"order (\d+)", prompt)[0])
    results = {
        part.tool_name: part.content
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    }
    calls = len(results)
    if "lookup_order" not in results:
        name, args = "lookup_order", {"order_id": order_id}
    elif "charge_card" not in results:
        name, args = "charge_card", {"amount_cents": results["lookup_order"]["amount_cents"]}
    elif "send_receipt" not in results:
        name, args = "send_receipt", {"charge_id": results["charge_card"]}
    else:
        dollars = results["lookup_order"]["amount_cents"] / 100
        return ModelResponse(
            parts=[TextPart(content=f"Charged ${dollars:.2f} for order {order_id} and emailed the receipt.")]
        )
    return ModelResponse(parts=[ToolCallPart(tool_name=name, args=args, tool_call_id=f"call_{calls + 1}")])


model = FunctionModel(_take_payment, model_name="offline-cashier")
