"""Stripe's official Python library (the `stripe` package) against the
built-in Stripe simulator: it creates a Checkout Session the way Darkroom
does and retrieves it. Run by `tests/api/clients.rs` with STRIPE_API_BASE
pointing at a test app's /sim/stripe; exits non-zero on any difference.
"""

import os
import sys

import stripe


def main() -> None:
    stripe.api_key = "sk_test_official_client"
    stripe.api_base = os.environ["STRIPE_API_BASE"]
    session = stripe.checkout.Session.create(
        mode="payment",
        client_reference_id="purchase-123",
        success_url="http://127.0.0.1/account?purchase=purchase-123",
        cancel_url="http://127.0.0.1/account?purchase=purchase-123",
        line_items=[
            {
                "quantity": 1,
                "price_data": {"currency": "usd", "unit_amount": 500, "product_data": {"name": "100 Darkroom credits"}},
            }
        ],
        metadata={"purchase_id": "purchase-123", "credits": "100"},
        idempotency_key="darkroom-purchase-purchase-123",
    )
    assert session.object == "checkout.session", session.object
    assert session.id.startswith("cs_test_"), session.id
    assert session.amount_total == 500 and session.currency == "usd", session
    assert session.payment_status == "unpaid" and session.status == "open", session
    assert session.url and "/pay/" in session.url, session.url
    assert session.metadata["purchase_id"] == "purchase-123", session.metadata
    again = stripe.checkout.Session.retrieve(session.id)
    assert again.id == session.id and again.client_reference_id == "purchase-123", again
    # The same idempotency key answers the same session.
    twice = stripe.checkout.Session.create(
        mode="payment",
        success_url="http://127.0.0.1/",
        line_items=[{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 500, "product_data": {"name": "x"}}}],
        idempotency_key="darkroom-purchase-purchase-123",
    )
    assert twice.id == session.id, (twice.id, session.id)
    try:
        stripe.checkout.Session.retrieve("cs_test_nope")
    except stripe.InvalidRequestError as e:
        assert e.http_status == 404, e.http_status
    else:
        raise AssertionError("an unknown session was found")
    print("stripe client: ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"stripe client: {e}", file=sys.stderr)
        sys.exit(1)
