import Foundation
import ReelayService

/// The machine-readable contract of the gateway (OpenAPI 3.1), served at GET /openapi.json.
///
/// Hand-written next to the routes it describes: change both together.
enum OpenAPIDocument {
    // Long descriptions live here so the document's lines stay short; they contain no characters JSON would escape.
    private static let infoDescription =
        "Submit image-to-video tasks, follow them, cancel them and download their videos. Users authenticate with "
        + "'Authorization: Bearer <api key>' (an operator creates keys with 'reelay keys create --user <uuid> --tier "
        + "free|pro|premium'); operators with QUEUE_PROCESSOR_TOKEN. Every error is application/problem+json. A method a path "
        + "does not serve gets 405 with Allow; HEAD is answered wherever GET is. Links in responses start with the server URL "
        + "below (PUBLIC_BASE_URL)."
    private static let submitDescription =
        "Validates the submission, hands it to the scheduler and waits up to ADMISSION_TIMEOUT_MS for its verdict. Without a "
        + "verdict in time the answer is 202 with status 'submitted': the submission is safe and its verdict follows "
        + "(poll GET /v1/tasks/{id}). Each API key may submit SUBMIT_RATE_PER_MIN tasks per minute (bursts of SUBMIT_BURST); "
        + "faster submissions get 429 with Retry-After. 422 lists every invalid field; it is also the answer to an "
        + "Idempotency-Key reused with a different submission."
    private static let idempotencyDescription =
        "Repeat a submission safely: the same key (per user) with the same body returns the task created the first time; "
        + "with another body it is refused (422)."
    private static let imageURLDescription =
        "https URL of the first frame, on a public host (no private, loopback or link-local address, no IP address in an "
        + "unusual encoding, no credentials)"
    private static let inputDescription =
        "Extra model inputs; only the keys the operator allows (REPLICATE_ALLOWED_INPUT_KEYS). At most 16384 bytes as JSON, "
        + "4 levels deep, strings of at most 2000 characters, 32 keys per object, 100 items per array; no U+0000 anywhere."
    private static let cancelDescription =
        "A pending task is canceled at once; a running one is canceled at Replicate and ends 'canceled' when Replicate "
        + "confirms. Owner only."

    /// The document as served: `servers` is PUBLIC_BASE_URL, and every response declares the headers HTTPEdge puts on every
    /// response (so the document cannot forget one).
    static func json(publicBaseURL: String) -> String {
        guard var document = (try? JSONSerialization.jsonObject(with: Data(Self.document.utf8))) as? [String: Any] else {
            preconditionFailure("OpenAPIDocument.document is not JSON")
        }
        document["servers"] = [["url": publicBaseURL]]
        var headers: [String: Any] = [:]
        for (name, value) in HTTPEdge.securityHeaders {
            headers[name.rawName] = [
                "required": true, "description": "Always '\(value)'.", "schema": ["type": "string", "const": value],
            ]
        }
        if var paths = document["paths"] as? [String: Any] {
            for (path, item) in paths {
                guard var item = item as? [String: Any] else { continue }
                for (method, operation) in item {
                    guard var operation = operation as? [String: Any], var responses = operation["responses"] as? [String: Any] else {
                        continue
                    }
                    responses = responses.mapValues { Self.withHeaders($0, headers) }
                    operation["responses"] = responses
                    item[method] = operation
                }
                paths[path] = item
            }
            document["paths"] = paths
        }
        if var components = document["components"] as? [String: Any], let responses = components["responses"] as? [String: Any] {
            components["responses"] = responses.mapValues { Self.withHeaders($0, headers) }
            document["components"] = components
        }
        let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// A response object with `headers` added (a `$ref` is left alone: the component it points to gets them).
    private static func withHeaders(_ response: Any, _ headers: [String: Any]) -> Any {
        guard var response = response as? [String: Any], response["$ref"] == nil else {
            return response
        }
        var own = response["headers"] as? [String: Any] ?? [:]
        own.merge(headers) { mine, _ in mine }
        response["headers"] = own
        return response
    }

    static let document = #"""
        {
          "openapi": "3.1.0",
          "info": {
            "title": "Reelay gateway",
            "version": "1.0.0",
            "description": "\#(Self.infoDescription)"
          },
          "servers": [],
          "security": [{"bearer": []}],
          "paths": {
            "/v1/tasks": {
              "post": {
                "summary": "Submit a task",
                "description": "\#(Self.submitDescription)",
                "operationId": "submitTask",
                "parameters": [
                  {
                    "name": "Idempotency-Key", "in": "header", "required": false,
                    "description": "\#(Self.idempotencyDescription)",
                    "schema": {"type": "string", "pattern": "^[!-~]{1,200}$"}
                  }
                ],
                "requestBody": {
                  "required": true,
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Submission"}}}
                },
                "responses": {
                  "202": {
                    "description": "Accepted: the task as persisted, or with status 'submitted' when the verdict is still pending.",
                    "headers": {"Location": {"required": true, "schema": {"type": "string"}, "description": "/v1/tasks/{id}"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}}
                  },
                  "400": {"$ref": "#/components/responses/Problem"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "403": {"$ref": "#/components/responses/Problem"},
                  "413": {"$ref": "#/components/responses/Problem"},
                  "415": {"$ref": "#/components/responses/Problem"},
                  "422": {"$ref": "#/components/responses/Problem"},
                  "429": {"$ref": "#/components/responses/TooManyRequests"},
                  "503": {"$ref": "#/components/responses/Unavailable"}
                }
              },
              "get": {
                "summary": "List the caller's tasks, newest first",
                "operationId": "listTasks",
                "parameters": [
                  {"name": "status", "in": "query", "required": false, "schema": {"$ref": "#/components/schemas/Status"}},
                  {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                  {
                    "name": "cursor", "in": "query", "required": false, "schema": {"type": "string"},
                    "description": "next_cursor of the previous page, unchanged."
                  }
                ],
                "responses": {
                  "200": {
                    "description": "One page of tasks.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "type": "object",
                          "required": ["tasks", "next_cursor"],
                          "properties": {
                            "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
                            "next_cursor": {"type": ["string", "null"], "description": "null on the last page"}
                          }
                        }
                      }
                    }
                  },
                  "400": {"$ref": "#/components/responses/Problem"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "403": {"$ref": "#/components/responses/Problem"},
                  "503": {"$ref": "#/components/responses/Unavailable"}
                }
              }
            },
            "/v1/tasks/{id}": {
              "parameters": [{"$ref": "#/components/parameters/TaskID"}],
              "get": {
                "summary": "A task and its history",
                "description": "Visible to the task's owner and to operators; anyone else gets 404.",
                "operationId": "getTask",
                "responses": {
                  "200": {
                    "description": "The task, with 'history': every status change and its reason.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskWithHistory"}}}
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/Problem"},
                  "503": {"$ref": "#/components/responses/Unavailable"}
                }
              }
            },
            "/v1/tasks/{id}/cancel": {
              "parameters": [{"$ref": "#/components/parameters/TaskID"}],
              "post": {
                "summary": "Cancel a task",
                "description": "\#(Self.cancelDescription)",
                "operationId": "cancelTask",
                "responses": {
                  "202": {"description": "Cancel accepted.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}}},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/Problem"},
                  "409": {"$ref": "#/components/responses/Problem"},
                  "503": {"$ref": "#/components/responses/Unavailable"}
                }
              }
            },
            "/v1/tasks/{id}/video": {
              "parameters": [{"$ref": "#/components/parameters/TaskID"}],
              "get": {
                "summary": "The stored output video",
                "operationId": "getTaskVideo",
                "responses": {
                  "200": {"description": "The video.", "content": {"video/mp4": {"schema": {"type": "string", "contentMediaType": "video/mp4"}}}},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/Problem"},
                  "409": {"$ref": "#/components/responses/Problem"},
                  "503": {"$ref": "#/components/responses/Unavailable"}
                }
              }
            },
            "/v1/queue/stats": {
              "get": {
                "summary": "Queue statistics (operators)",
                "operationId": "queueStats",
                "security": [{"opsToken": []}],
                "responses": {
                  "200": {
                    "description": "Counts, success rate, wait and run time percentiles.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueueStats"}}}
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "503": {"$ref": "#/components/responses/Unavailable"}
                }
              }
            },
            "/healthz": {
              "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "security": [],
                "responses": {
                  "200": {
                    "description": "The process answers.",
                    "content": {
                      "application/json": {
                        "schema": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}
                      }
                    }
                  }
                }
              }
            },
            "/readyz": {
              "get": {
                "summary": "Readiness: PostgreSQL and RabbitMQ reachable",
                "operationId": "readyz",
                "security": [],
                "responses": {
                  "200": {"description": "Ready.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}},
                  "503": {
                    "description": "A dependency is unreachable; see 'checks'.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}
                  }
                }
              }
            },
            "/openapi.json": {
              "get": {
                "summary": "This document",
                "operationId": "openapi",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}
              }
            }
          },
          "components": {
            "securitySchemes": {
              "bearer": {"type": "http", "scheme": "bearer", "description": "A user's API key."},
              "opsToken": {"type": "http", "scheme": "bearer", "description": "QUEUE_PROCESSOR_TOKEN."}
            },
            "parameters": {
              "TaskID": {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}
            },
            "responses": {
              "Problem": {
                "description": "What went wrong and what to do about it (RFC 9457).",
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
              },
              "Unauthorized": {
                "description": "Missing, unknown or revoked API key (or not the ops token where one is needed).",
                "headers": {"WWW-Authenticate": {"required": true, "schema": {"const": "Bearer"}}},
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
              },
              "TooManyRequests": {
                "description": "Submitting faster than SUBMIT_RATE_PER_MIN (Retry-After says when to come back), or too many active tasks.",
                "headers": {"Retry-After": {"required": false, "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
              },
              "Unavailable": {
                "description": "The database or broker is unavailable, the queue is full, or the gateway is stopping; try again.",
                "headers": {"Retry-After": {"required": false, "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
              }
            },
            "schemas": {
              "Status": {
                "type": "string",
                "enum": ["pending", "dispatching", "processing", "completed", "failed", "canceled", "rejected"]
              },
              "Submission": {
                "type": "object",
                "required": ["prompt", "input_image_url"],
                "properties": {
                  "prompt": {
                    "type": "string", "minLength": 1, "maxLength": 2000, "description": "1 to 2000 characters after trimming; no U+0000"
                  },
                  "input_image_url": {
                    "type": "string", "format": "uri", "maxLength": 2048,
                    "description": "\#(Self.imageURLDescription)"
                  },
                  "input": {
                    "type": ["object", "null"],
                    "maxProperties": 32,
                    "description": "\#(Self.inputDescription)"
                  }
                }
              },
              "Task": {
                "type": "object",
                "required": [
                  "id", "status", "prompt", "input_image_url", "output_video_url", "error_message", "priority", "retry_count",
                  "queue_position", "created_at", "updated_at", "started_at", "completed_at"
                ],
                "properties": {
                  "id": {"type": "string", "format": "uuid"},
                  "status": {"type": "string", "description": "A Status, or 'submitted' while the admission verdict is pending."},
                  "prompt": {"type": "string"},
                  "input_image_url": {"type": "string"},
                  "output_video_url": {"type": ["string", "null"], "description": "GET it when the task is completed."},
                  "error_message": {"type": ["string", "null"]},
                  "priority": {"type": ["integer", "null"]},
                  "retry_count": {"type": "integer"},
                  "queue_position": {"type": ["integer", "null"], "description": "1-based, while pending."},
                  "created_at": {"type": "string", "format": "date-time"},
                  "updated_at": {"type": "string", "format": "date-time"},
                  "started_at": {"type": ["string", "null"], "format": "date-time"},
                  "completed_at": {"type": ["string", "null"], "format": "date-time"}
                }
              },
              "TaskWithHistory": {
                "allOf": [
                  {"$ref": "#/components/schemas/Task"},
                  {
                    "type": "object",
                    "required": ["history"],
                    "properties": {
                      "history": {
                        "type": "array",
                        "items": {
                          "type": "object",
                          "required": ["at", "from", "to", "attempt", "reason"],
                          "properties": {
                            "at": {"type": "string", "format": "date-time"},
                            "from": {"type": ["string", "null"]},
                            "to": {"type": "string"},
                            "attempt": {"type": "integer"},
                            "reason": {"type": ["string", "null"]}
                          }
                        }
                      }
                    }
                  }
                ]
              },
              "QueueStats": {
                "type": "object",
                "required": ["pending", "running", "completed", "failed", "canceled", "rejected", "success_rate", "wait_seconds", "run_seconds"],
                "properties": {
                  "pending": {"type": "integer"},
                  "running": {"type": "integer"},
                  "completed": {"type": "integer"},
                  "failed": {"type": "integer"},
                  "canceled": {"type": "integer"},
                  "rejected": {"type": "integer"},
                  "success_rate": {"type": "number", "description": "completed / (completed + failed); 1 when none finished"},
                  "wait_seconds": {"$ref": "#/components/schemas/Percentiles"},
                  "run_seconds": {"$ref": "#/components/schemas/Percentiles"}
                }
              },
              "Readiness": {
                "type": "object",
                "required": ["status", "checks"],
                "properties": {
                  "status": {"enum": ["ready", "not ready"]},
                  "checks": {"type": "object", "additionalProperties": {"enum": ["ok", "unreachable"]}}
                }
              },
              "Percentiles": {
                "type": "object",
                "required": ["p50", "p95"],
                "properties": {"p50": {"type": "number"}, "p95": {"type": "number"}}
              },
              "Problem": {
                "type": "object",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                  "type": {"type": "string"},
                  "title": {"type": "string"},
                  "status": {"type": "integer"},
                  "detail": {"type": "string", "description": "What to do about it."},
                  "invalid_fields": {
                    "type": "array",
                    "items": {
                      "type": "object",
                      "required": ["field", "message"],
                      "properties": {"field": {"type": "string"}, "message": {"type": "string"}}
                    }
                  }
                }
              }
            }
          }
        }
        """#
}
