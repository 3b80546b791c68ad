-- hookline rule script: turns CRM / ticketing webhooks into DIDWW routing changes.
--
-- hookline calls on_event(ev) once per stored event (SPEC section 4). This file
-- dispatches on ev.source (the name under "sources" in hookline.json) to one handler
-- per sender. Each handler:
--   * checks that the fields it needs exist (payloads change, senders misconfigure),
--   * calls skip("reason") when the event is not relevant (the reason is audited as
--     rule.skipped, so write it for the operator reading the audit trail),
--   * raises error(...) only for a problem an operator must fix (a mapping missing
--     from teams.json, a name nobody knows): the event is stored as rule_failed with
--     file:line and can be reprocessed once the data is fixed.
--
-- Mapping data (trunk ids, DID numbers, people) lives in rules/teams.json, loaded
-- read-only as data.teams. Nothing here trusts ids sent by the webhook sender: the
-- payload only ever selects entries of teams.json, so a forged or buggy webhook cannot
-- point a DID at an arbitrary trunk.
--
-- Test offline: hookline rule-test -c conf/hookline.json --source zendesk \
--                 tests/fixtures/zendesk_ticket_urgent.json

---------------------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------------------

-- Globals the handlers use on every event, as locals: a local is a register read, a
-- global a table lookup (hookline gives each event a fresh global table).
local type, select, tostring = type, select, tostring
local NULL = json.null

-- Walks nested tables: get(t, "a", "b") is t.a.b, or nil when a step is missing, is
-- not a table, or is JSON null.
local function get(t, ...)
    local v = t
    for i = 1, select("#", ...) do
        if type(v) ~= "table" then
            return nil
        end
        v = v[(select(i, ...))]
        if v == NULL then
            return nil
        end
    end
    return v
end

-- A required entry of teams.json. A missing one is a deployment error, not an
-- irrelevant event: fail loudly (rule.failed names this line and the key).
local function teams(...)
    local v = get(data.teams, ...)
    if v == nil then
        error("teams.json: missing " .. table.concat({...}, "."), 2)
    end
    return v
end

-- Normalizes an id that senders emit as a JSON integer or as a string of digits
-- (Zendesk sends "7355093184401", HubSpot 18244310551) to the string used as a key in
-- teams.json. Returns nil for anything else (null, "", 0, nested values).
local function id_key(v)
    if math.type(v) == "integer" and v > 0 then
        return tostring(v)
    elseif type(v) == "string" and v:match("^%d+$") and v:match("[1-9]") then
        return v
    end
    return nil
end

local function lower(v)
    return type(v) == "string" and v:lower() or nil
end

-- Returns the names listed in a form field: a repeated field arrives as an array, a
-- single one as a string; "a, b" (what Zapier sends for a line-item list mapped into one
-- field) is split on commas and spaces too. Patterns here are single character classes
-- (linear time): a backtracking pattern on sender-controlled text can run for minutes
-- inside one string call, which no instruction limit interrupts.
local function form_list(v)
    local raw = {}
    if type(v) == "string" then
        raw = {v}
    elseif type(v) == "table" then
        for _, item in ipairs(v) do
            raw[#raw + 1] = item
        end
    end
    local out = {}
    for _, item in ipairs(raw) do
        if type(item) == "string" then
            for part in item:gmatch("[^,%s]+") do
                out[#out + 1] = part
            end
        end
    end
    return out
end

-- A phone number as sent by a CRM ("+44 20 7946 0561", "0044-20-7946-0561") in
-- international form ("+442079460561"), or nil when it is not one. didww.* drops the
-- separators itself, but refuses the 00 form: only the rule knows it is international.
-- Up to 17 digits: DIDWW's sandbox numbers are longer than E.164's 15.
local function e164(v)
    if type(v) ~= "string" then
        return nil
    end
    local n = v:gsub("[%s%-%.%(%)/]", "")
    if n:sub(1, 2) == "00" then
        n = "+" .. n:sub(3)
    end
    local digits = n:match("^%+?(%d+)$")
    if not digits or #digits < 6 or #digits > 17 or digits:sub(1, 1) == "0" then
        return nil
    end
    return "+" .. digits
end

-- Cuts s to at most n bytes without splitting a UTF-8 sequence (DIDWW limits the DID
-- description; an invalid byte sequence would be rejected by didww.update_did).
local function truncate_utf8(s, n)
    if #s <= n then
        return s
    end
    local cut = n
    while cut > 0 do
        local b = s:byte(cut + 1)
        if b == nil or b < 0x80 or b >= 0xC0 then
            break -- the byte after the cut starts a character: cut is on a boundary
        end
        cut = cut - 1
    end
    return s:sub(1, cut)
end

---------------------------------------------------------------------------------------
-- Zendesk: a ticket escalated to urgent routes the customer's support line to the
-- VIP trunk group.
--
-- Payload: Zendesk event-subscribed webhook (zendesk_event_version 2022-11-06),
--   { "type": "zen:event-type:ticket.priority_changed", "id": "<event uuid>",
--     "subject": "zen:ticket:<id>", "detail": { <ticket: id, organization_id, ...> },
--     "event": { "previous": "NORMAL", "current": "URGENT", "meta": {...} } }
-- and "zen:event-type:ticket.created" (priority in detail.priority). Zendesk ids are
-- strings; enum values are upper case in these payloads, compared case-insensitively.
--
-- The payload carries no phone number: the ticket's organization selects the DID its
-- people call (teams.json zendesk.organization_lines, organization id -> E.164).
-- conf/hookline.json takes the event id from the payload ("event_id": "json:/id"), so
-- a Zendesk retry of the same event is answered as a duplicate and not routed twice.
---------------------------------------------------------------------------------------
local ZENDESK_PRIORITY_CHANGED = "zen:event-type:ticket.priority_changed"
local ZENDESK_TICKET_CREATED = "zen:event-type:ticket.created"

local function handle_zendesk(ev)
    local body = ev.body
    local event_type = get(body, "type")
    local ticket = get(body, "detail")
    if type(ticket) ~= "table" then
        skip(("zendesk: %s event without a ticket in 'detail'"):format(tostring(event_type)))
    end
    local ticket_id = tostring(get(ticket, "id") or "?")

    local priority
    if event_type == ZENDESK_PRIORITY_CHANGED then
        priority = lower(get(body, "event", "current"))
    elseif event_type == ZENDESK_TICKET_CREATED then
        priority = lower(get(ticket, "priority"))
    else
        skip(("zendesk: event type %s is not handled"):format(tostring(event_type)))
    end
    if priority ~= "urgent" then
        skip(("zendesk: ticket %s priority is %s, not urgent"):format(ticket_id,
            priority or "unset"))
    end
    local status = lower(get(ticket, "status"))
    if status == "solved" or status == "closed" then
        skip(("zendesk: ticket %s is %s"):format(ticket_id, status))
    end

    local org = id_key(get(ticket, "organization_id"))
    if not org then
        skip(("zendesk: urgent ticket %s has no organization"):format(ticket_id))
    end
    local number = get(data.teams, "zendesk", "organization_lines", org)
    if not number then
        skip(("zendesk: organization %s has no support line in teams.json"):format(org))
    end

    local group = teams("zendesk", "vip_trunk_group")
    log.info("zendesk: urgent ticket, routing the organization's line to the VIP group",
        {ticket = ticket_id, organization = org, number = number})
    didww.route_did{number = number, trunk_group = group}
end

---------------------------------------------------------------------------------------
-- HubSpot: a deal entering a routed stage (e.g. closedwon) routes the account's line
-- to the deal owner's trunk.
--
-- Payload: HubSpot webhooks v3, a JSON array of up to 100 subscription events,
--   [{ "subscriptionType": "deal.propertyChange", "objectId": 18244310551,
--      "propertyName": "dealstage", "propertyValue": "closedwon", "occurredAt": ms, ...}]
--
-- Neither the owner nor a phone number is in a dealstage event. Choice made here:
--   * the DID comes from teams.json hubspot.deals[objectId].number (the account's
--     direct line, provisioned when the deal was created);
--   * the owner is the newest "hubspot_owner_id" propertyChange for the same deal in
--     the same batch (HubSpot batches changes made in one edit, e.g. "Closed won" and a
--     hand-over to an account manager), else hubspot.deals[objectId].owner_id;
--   * the owner selects the trunk through hubspot.owner_trunks.
-- A batch can carry several deals; each routed DID gets one request (last change wins
-- when the same deal appears twice). Unknown deals and stages are logged and ignored;
-- an owner without a trunk is an error (someone must be added to teams.json).
---------------------------------------------------------------------------------------
local function handle_hubspot(ev)
    local batch = ev.body
    if type(batch) ~= "table" or #batch == 0 then
        skip("hubspot: payload is not a non-empty array of subscription events")
    end

    local route_stages = {}
    for _, stage in ipairs(teams("hubspot", "route_stages")) do
        route_stages[stage] = true
    end

    -- First pass: the newest owner change and the newest stage per deal.
    local owner_change, owner_at = {}, {}
    local stage_of, stage_at, order = {}, {}, {}
    for i, e in ipairs(batch) do
        local deal = id_key(get(e, "objectId"))
        local at = math.tointeger(get(e, "occurredAt")) or 0
        if get(e, "subscriptionType") == "deal.propertyChange" and deal then
            local prop, value = get(e, "propertyName"), get(e, "propertyValue")
            if prop == "hubspot_owner_id" and id_key(value) and at >= (owner_at[deal] or 0) then
                owner_change[deal], owner_at[deal] = id_key(value), at
            elseif prop == "dealstage" and type(value) == "string" and
                at >= (stage_at[deal] or 0) then
                if not stage_of[deal] then
                    order[#order + 1] = deal
                end
                stage_of[deal], stage_at[deal] = value, at
            end
        else
            log.debug("hubspot: ignoring event", {index = i,
                type = tostring(get(e, "subscriptionType"))})
        end
    end

    -- Second pass: route each deal whose newest stage is a routed one.
    local routed = 0
    for _, deal in ipairs(order) do
        local stage = stage_of[deal]
        local mapping = get(data.teams, "hubspot", "deals", deal)
        if not route_stages[stage] then
            log.info("hubspot: deal stage not routed", {deal = deal, stage = stage})
        elseif not mapping or not get(mapping, "number") then
            log.warn("hubspot: deal has no line in teams.json", {deal = deal, stage = stage})
        else
            local owner = owner_change[deal] or id_key(get(mapping, "owner_id"))
            if not owner then
                error(("hubspot: deal %s has no owner in the batch or in teams.json"):format(deal))
            end
            local trunk = get(data.teams, "hubspot", "owner_trunks", owner)
            if not trunk then
                error(("hubspot: owner %s of deal %s has no trunk in teams.json hubspot.owner_trunks")
                    :format(owner, deal))
            end
            log.info("hubspot: routing the account line to the deal owner's trunk",
                {deal = deal, stage = stage, owner = owner, number = mapping.number})
            didww.route_did{number = mapping.number, trunk = trunk}
            routed = routed + 1
        end
    end
    if routed == 0 then
        skip(("hubspot: none of %d events moved a known deal into a routed stage"):format(#batch))
    end
end

---------------------------------------------------------------------------------------
-- Zapier (Webhooks by Zapier, payload type "form"): an on-call hand-over replaces the
-- on-call trunk group's members.
--
-- Body (application/x-www-form-urlencoded), e.g.
--   rotation=support-oncall&members=alice&members=carol&effective_from=...&changed_by=...
-- "members" may be repeated or comma-separated. Names map to trunks through
-- teams.json oncall.members. The group is always oncall.trunk_group: the form cannot
-- name DIDWW ids. An unknown name fails the rule (never silently drop someone from
-- on-call); an empty list is skipped (never clear the group by accident).
---------------------------------------------------------------------------------------
local function handle_zapier(ev)
    local form = ev.body
    if type(form) ~= "table" then
        skip("zapier: body is not a form")
    end
    local rotation = teams("oncall", "rotation")
    local asked = get(form, "rotation")
    if asked ~= nil and asked ~= rotation then
        skip(("zapier: rotation '%s' is not handled (expected '%s')"):format(tostring(asked),
            rotation))
    end

    local names = form_list(get(form, "members"))
    if #names == 0 then
        skip("zapier: no on-call members in the form; refusing to empty the on-call group")
    end
    local trunks, seen = {}, {}
    for _, name in ipairs(names) do
        local key = name:lower()
        local trunk = get(data.teams, "oncall", "members", key)
        if not trunk then
            error(("zapier: on-call member '%s' has no trunk in teams.json oncall.members")
                :format(name))
        end
        if not seen[trunk] then -- the same person twice is one membership
            seen[trunk] = true
            trunks[#trunks + 1] = trunk
        end
    end

    log.info("zapier: replacing on-call members",
        {rotation = rotation, members = table.concat(names, ","),
         changed_by = tostring(get(form, "changed_by") or "")})
    didww.set_group_trunks{trunk_group = teams("oncall", "trunk_group"), trunks = trunks}
end

---------------------------------------------------------------------------------------
-- Freshdesk: an agent going offline unroutes that agent's direct line.
--
-- Payload: Freshdesk's agent update event (onAgentUpdate, as relayed to this webhook),
--   { "event": "onAgentUpdate", "data": { "agent": { "id": 43018865102,
--       "available": false, ... }, "changes": { "model_changes":
--       { "available": [true, false] } } } }
-- Only a change of "available" from true to false acts: other agent edits (signature,
-- groups) also arrive as onAgentUpdate and must not unroute anything. The line comes
-- from teams.json freshdesk.agent_lines (agent id -> E.164).
---------------------------------------------------------------------------------------
local function handle_freshdesk(ev)
    local body = ev.body
    local event_name = get(body, "event")
    if event_name ~= nil and event_name ~= "onAgentUpdate" then
        skip(("freshdesk: event %s is not handled"):format(tostring(event_name)))
    end
    local agent = get(body, "data", "agent")
    local agent_id = id_key(get(agent, "id"))
    if not agent_id then
        skip("freshdesk: payload has no data.agent.id")
    end
    local change = get(body, "data", "changes", "model_changes", "available")
    if type(change) ~= "table" or change[2] == nil then
        skip(("freshdesk: agent %s update did not change availability"):format(agent_id))
    end
    if change[2] ~= false or get(agent, "available") == true then
        skip(("freshdesk: agent %s is available"):format(agent_id))
    end
    if change[1] == false then
        skip(("freshdesk: agent %s was already offline"):format(agent_id))
    end

    local number = get(data.teams, "freshdesk", "agent_lines", agent_id)
    if not number then
        skip(("freshdesk: agent %s has no direct line in teams.json"):format(agent_id))
    end
    log.info("freshdesk: agent went offline, unrouting their line",
        {agent = agent_id, number = number})
    didww.unroute_did{number = number}
end

---------------------------------------------------------------------------------------
-- Generic CRM (Standard Webhooks): account events route the account's support line.
--
-- Payload: the Standard Webhooks shape { "type": ..., "timestamp": ..., "data": {...} }.
--   account.team_assigned: data.support_line (E.164, spaces and dashes allowed), data.team, data.account_id,
--     data.account_name -> route the line to teams.json crm.team_trunk_groups[team]
--     and label the DID with the account (DID description, at most 255 bytes);
--   account.closed: data.support_line -> unroute it.
---------------------------------------------------------------------------------------
local function handle_crm(ev)
    local body = ev.body
    local event_type = get(body, "type")
    if event_type ~= "account.team_assigned" and event_type ~= "account.closed" then
        skip(("crm: event type %s is not handled"):format(tostring(event_type or "(none)")))
    end
    local account = get(body, "data")
    if type(account) ~= "table" then
        skip(("crm: %s event without 'data'"):format(event_type))
    end
    local account_id = tostring(get(account, "account_id") or "?")
    local raw_line = get(account, "support_line")
    local line = e164(raw_line)
    if not line then
        skip(("crm: account %s has no valid E.164 support_line (got %s)"):format(account_id,
            type(raw_line) == "string" and ("'" .. raw_line:sub(1, 40) .. "'") or "none"))
    end

    if event_type == "account.closed" then
        log.info("crm: account closed, unrouting its line", {account = account_id, number = line})
        didww.unroute_did{number = line}
        return
    end

    local team = lower(get(account, "team"))
    local group = team and get(data.teams, "crm", "team_trunk_groups", team)
    if not group then
        error(("crm: team '%s' of account %s has no trunk group in teams.json")
            :format(tostring(get(account, "team")), account_id))
    end
    local name = get(account, "account_name")
    local label = type(name) == "string" and name ~= "" and
        ("%s (%s), team %s"):format(name, account_id, team) or
        ("account %s, team %s"):format(account_id, team)
    log.info("crm: routing the account line to the team", {account = account_id,
        team = team, number = line})
    didww.route_did{number = line, trunk_group = group}
    didww.update_did{number = line, description = truncate_utf8(label, 255)}
end

---------------------------------------------------------------------------------------
-- Dispatch
---------------------------------------------------------------------------------------
local handlers = {
    zendesk = handle_zendesk,
    hubspot = handle_hubspot,
    zapier = handle_zapier,
    freshdesk = handle_freshdesk,
    crm = handle_crm,
}

function on_event(ev)
    local handler = handlers[ev.source]
    if not handler then
        skip(("no rule for source '%s'"):format(tostring(ev.source)))
    end
    if ev.body == nil then
        skip(("%s: event has no decoded body"):format(ev.source))
    end
    handler(ev)
end
