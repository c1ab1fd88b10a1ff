-- wrk script for make bench: POST the same body a delivery carries, with
-- headers of the same sizes, so that wrk measures the receiver's ceiling for
-- the requests the workers send.  bench/run writes the body to the file
-- named by KW_BENCH_BODY.

local f = assert(io.open(os.getenv("KW_BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "konvox_webhooks/1.0"
wrk.headers["webhook-id"] = "018f3c1e-7b2a-7c4d-9e8f-0a1b2c3d4e5f"
wrk.headers["webhook-timestamp"] = "1700000000"
wrk.headers["webhook-signature"] = "v1," .. string.rep("A", 43) .. "="
