variable "endpoint" {
  description = "The agent's HTTP endpoint, e.g. http://127.0.0.1:3370."
  type        = string
}

variable "token" {
  description = "The agent's bearer token (the contents of its token_file)."
  type        = string
  sensitive   = true
}
