// Stripe's official Node library (the `stripe` npm package, installed in
// end2end/) checks a signature the Stripe simulator's way of signing made:
// `webhooks.constructEvent` must accept it, and refuse the payload altered
// or signed with another secret. Run by `tests/api/clients.rs` with
// PAYLOAD, SIGNATURE and SECRET; exits non-zero on any difference.
const Stripe = require("stripe");
const stripe = Stripe("sk_test_official_client");
const { PAYLOAD, SIGNATURE, SECRET } = process.env;

const event = stripe.webhooks.constructEvent(PAYLOAD, SIGNATURE, SECRET);
if (event.type !== "checkout.session.completed") throw new Error(`read as ${event.type}`);
for (const [what, payload, secret] of [
  ["altered", PAYLOAD.replace("500", "1"), SECRET],
  ["another secret", PAYLOAD, "whsec_someone_else"],
]) {
  let refused = false;
  try {
    stripe.webhooks.constructEvent(payload, SIGNATURE, secret);
  } catch (e) {
    refused = e.type === "StripeSignatureVerificationError";
  }
  if (!refused) throw new Error(`a signature was accepted for the payload ${what}`);
}
console.log("stripe webhook: ok");
