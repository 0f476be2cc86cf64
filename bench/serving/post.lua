-- wrk: POST the same V2 body (path and body file from env) on every request.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.path = os.getenv("INFER_PATH")
wrk.headers["Content-Type"] = "application/json"
