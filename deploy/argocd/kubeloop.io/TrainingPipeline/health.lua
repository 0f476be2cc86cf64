-- Argo CD health of a kubeloop.io TrainingPipeline, from status.conditions (Stalled, Ready,
-- Running), status.observedGeneration and spec.suspend
-- (argocd-cm: resource.customizations.health.kubeloop.io_TrainingPipeline).
local hs = {status = "Progressing", message = "Waiting for the operator"}

local function condition(t)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == t then
        return c
      end
    end
  end
  return nil
end

local function says(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Suspended: no new training runs start"
  return hs
end

if obj.status == nil then
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = says(stalled, "Stalled")
  return hs
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "False" and ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = says(ready, "Invalid spec")
  return hs
end

local running = condition("Running")
if running ~= nil and running.status == "True" then
  hs.status = "Progressing"
  hs.message = says(running, "Training run in progress")
  return hs
end

-- A version passed the gate and waits for a person to promote it (autoPromote: false), as
-- a paused rollout waits: Suspended, with the kubectl command in the message.
if ready ~= nil and ready.status == "False" and ready.reason == "AwaitingApproval" then
  hs.status = "Suspended"
  hs.message = says(ready, "A version awaits approval")
  return hs
end

-- Runs finished (failed, or rejected by the promotion gate) and none became the champion.
if ready ~= nil and ready.status == "False" and ready.reason == "NotPromoted" then
  hs.status = "Degraded"
  hs.message = says(ready, "No run has become the champion")
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = says(ready, "Ready")
  return hs
end

hs.message = says(ready, "Waiting for the first run")
return hs
