-- wrk script: PUT a fixed-size body to new keys (/store/<PREFIX>/<thread>-<n>) until each thread has TOTAL/THREADS
-- answers, then stop (a few in-flight requests may add up to one per connection). From the environment: TOTAL,
-- THREADS (wrk's -t), BODY_SIZE (bytes, default 1024), PREFIX (default "fill"), DONE (a path: each thread creates
-- DONE.<thread> when it stops, since wrk itself waits out its -d; the caller then sends wrk SIGINT).
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("tid", counter)
end

function init(args)
    local size = tonumber(os.getenv("BODY_SIZE") or "1024")
    body = string.rep("x", size)
    prefix = os.getenv("PREFIX") or "fill"
    per_thread = math.ceil(tonumber(os.getenv("TOTAL") or "1000000") / tonumber(os.getenv("THREADS") or "1"))
    n = 0
    answered = 0
end

function request()
    n = n + 1
    return wrk.format("PUT", "/store/" .. prefix .. "/" .. tid .. "-" .. n, nil, body)
end

function response(status, headers, body)
    answered = answered + 1
    if answered == per_thread then
        local done = os.getenv("DONE")
        if done then
            local f = io.open(done .. "." .. tid, "w")
            f:close()
        end
        wrk.thread:stop()
    end
end
