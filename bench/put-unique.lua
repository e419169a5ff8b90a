-- wrk script: PUT a fixed-size body to a new key on every request (/store/<PREFIX>/<thread>-<n>).
-- From the environment: BODY_SIZE (bytes, default 1024), PREFIX (default "bench").
local threads = {}
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("tid", counter)
    table.insert(threads, thread)
end

function init(args)
    local size = tonumber(os.getenv("BODY_SIZE") or "1024")
    body = string.rep("x", size)
    prefix = os.getenv("PREFIX") or "bench"
    n = 0
end

function request()
    n = n + 1
    return wrk.format("PUT", "/store/" .. prefix .. "/" .. tid .. "-" .. n, nil, body)
end
