-- wrk script: a GET with the development storefront key.
wrk.headers["Authorization"] = "Bearer dev-storefront-key"
