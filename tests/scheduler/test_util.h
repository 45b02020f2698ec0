// Helpers for the scheduler tests: small machine sets built by hand.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <utility>

#include "scheduler/machine_set.h"
#include "scheduler/request.h"

namespace berth::scheduler::testing {

inline MachineView Machine(std::string id, int64_t cpu, int64_t memory_mib,
                           std::initializer_list<std::pair<std::string, std::string>> attrs = {}) {
  MachineView m;
  m.id = std::move(id);
  m.cpu_total = cpu;
  m.memory_total = memory_mib << 20;
  m.attributes.push_back({"machine.id", m.id});
  for (const auto& [k, v] : attrs) m.attributes.push_back({k, v});
  return m;
}

inline size_t AddTo(MachineSet& set, MachineView m) {
  auto r = set.Add(std::move(m));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : 0;
}

inline PlacementRequest Request(std::string job, int count, int64_t cpu = 100,
                                int64_t memory_mib = 64) {
  PlacementRequest r;
  r.job = std::move(job);
  r.group = "g";
  r.count = count;
  r.cpu = cpu;
  r.memory_bytes = memory_mib << 20;
  return r;
}

inline spec::Constraint C(std::string attribute, spec::ConstraintOperator op,
                          std::string value = "") {
  return spec::Constraint{std::move(attribute), op, std::move(value)};
}

}  // namespace berth::scheduler::testing
