-- hookline rule script for Salesforce Outbound Messages (sources with
-- "format": "salesforce-outbound"; see conf/examples/salesforce.json).
--
-- hookline has already parsed the SOAP message, checked its OrganizationId against the
-- source's organization_id and left the SessionId out. ev.body is:
--   { organization_id = "00D...", action_id = "04k...", enterprise_url = "...",
--     partner_url = "...",
--     notifications = { { id = "04l...", sobject = { type = "Account", Id = "001...",
--                                                    Name = "...", ... } }, ... } }
-- A field Salesforce sent as nil is json.null. One message carries up to 100
-- notifications; Salesforce redelivers the same message until it is acknowledged, and
-- hookline answers a redelivery as a duplicate (acknowledged, not run again).
--
-- This example: when an Account's "Support_Number__c" (or its Phone) is sent, the
-- number is routed to the trunk group of the account's Type, from rules/salesforce.json
-- (data.salesforce). Other objects and types are skipped with a reason.
--
-- Test offline: hookline rule-test -c conf/examples/salesforce.json --source salesforce \
--   --header 'Content-Type: text/xml' tests/fixtures/salesforce/account_outbound.xml

local NULL = json.null

local function field(sobject, name)
    local v = sobject[name]
    if v == NULL or v == "" then
        return nil
    end
    return v
end

function on_event(ev)
    local groups = data.salesforce.account_type_trunk_groups
    local routed, ignored = 0, {}
    for _, n in ipairs(ev.body.notifications) do
        local so = n.sobject or {}
        local number = field(so, "Support_Number__c") or field(so, "Phone")
        local group = groups[field(so, "Type") or ""]
        if so.type ~= "Account" then
            ignored[#ignored + 1] = ("%s is a %s"):format(n.id, tostring(so.type))
        elseif not number then
            ignored[#ignored + 1] = ("%s: account %s has no support number"):format(n.id,
                tostring(so.Id))
        elseif not group then
            ignored[#ignored + 1] = ("%s: account type %s has no trunk group"):format(n.id,
                tostring(field(so, "Type")))
        else
            log.info("salesforce: routing the account's support line",
                {notification = n.id, account = so.Id, number = number})
            didww.route_did{number = number, trunk_group = group}
            routed = routed + 1
        end
    end
    if routed == 0 then
        skip("salesforce: nothing to route (" .. table.concat(ignored, "; ") .. ")")
    end
end
