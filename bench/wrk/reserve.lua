-- wrk script: a 1-line reserve of $SKU (default WRK-DEEP), TTL 60 s.
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer dev-storefront-key"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"lines":[{"sku":"' .. (os.getenv("SKU") or "WRK-DEEP") .. '","qty":1}],"ttl_seconds":60}'
