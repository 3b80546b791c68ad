-- delivery_rule.lua: the rule of scripts/bench/delivery.sh. Each webhook body names
-- one DID by id and what to do with it, so the benchmark decides exactly which job
-- (one per webhook) lands on which DID:
--   {"op": "route",  "did": "<uuid>", "trunk": "<uuid>", "n": ...}  -> didww.route_did
--   {"op": "update", "did": "<uuid>", "capacity_limit": N, "n": ...} -> didww.update_did
--   {"op": "route_number", "number": "<digits>", "trunk": "<uuid>", "n": ...}
--                                                  -> didww.route_did by number
-- "n" (and the run id) only make every body distinct, so none is a duplicate.
function on_event(ev)
    local b = ev.body
    if b.op == "route" then
        didww.route_did({ did = b.did, trunk = b.trunk })
    elseif b.op == "route_number" then
        didww.route_did({ number = b.number, trunk = b.trunk })
    elseif b.op == "update" then
        didww.update_did({ did = b.did, capacity_limit = b.capacity_limit })
    else
        skip("unknown op " .. tostring(b.op))
    end
end
